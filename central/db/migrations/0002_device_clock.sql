-- Flags messages whose device clock cannot be right: ahead of central's clock by
-- more than five minutes, or before 2020 (a box without a real-time clock that
-- booted at the 1970 epoch). Late delivery from a buffer is normal and not flagged.
ALTER TABLE device_messages ADD COLUMN device_clock_suspect boolean NOT NULL DEFAULT false;
