"""The ward dashboard in headless Chromium against the whole running chain.

The tests share one ward and one logged-in page and run in file order, because the
board forces an asystole about 12 s after the stream starts: the live tile first,
then that alarm, then consent, chat, keyboard, tablet and reconnection.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from browser_testkit import run_async

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    # The chromium fixture then skips every test with the reason, or fails them
    # under AURA_REQUIRE_BROWSER=1.
    pass

from central.auth import hash_secret
from central.chat_client import ChatClient, ChatIdentity
from demo.stack import ASSIGNED_NURSE, PATIENT_ID, UNASSIGNED_NURSE, Stack

pytestmark = pytest.mark.timeout(120)

PHYSICIAN = "dr.cruz"
LIVE_TIMEOUT_MS = 20_000
PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}
# Records each system notification the page raises, so a test can see it.
RECORD_NOTIFICATIONS = """
window.notificationTitles = [];
window.Notification = class extends window.Notification {
    constructor(title, options) {
        super(title, options);
        window.notificationTitles.push(title);
    }
};
"""
ALARM_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Chromium's sandbox does not run as root, and CI runs the tests as root.
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def log_in(browser: Browser, ward: Stack, username: str) -> Page:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.grant_permissions(["notifications"])
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    page.goto(f"{ward.base_url}/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(ward.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#ward-view")).to_be_visible()
    return page


@pytest.fixture(scope="module")
def script_errors() -> list[str]:
    """Uncaught exceptions and unhandled rejections of the shared page."""
    return []


@pytest.fixture(scope="module")
def ana(browser: Browser, ward: Stack, script_errors: list[str]) -> Iterator[Page]:
    page = log_in(browser, ward, ASSIGNED_NURSE)
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    yield page
    page.context.close()


async def audit_actions(ward: Stack, username: str) -> list[str]:
    connection = await asyncpg.connect(ward.database_url)
    try:
        rows = await connection.fetch(
            "SELECT a.action FROM audit_log a JOIN users u ON a.actor_id = u.id::text"
            " WHERE u.username = $1 AND a.outcome = 'ok' ORDER BY a.id",
            username,
        )
    finally:
        await connection.close()
    return [row["action"] for row in rows]


def ecg_pixels(page: Page) -> int:
    return page.evaluate(
        """() => {
            const canvas = document.querySelector('.tile .ecg');
            const data = canvas.getContext('2d')
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let drawn = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn += 1;
            return drawn;
        }"""
    )


def test_tile_shows_live_vitals_and_ecg(
    ana: Page, ward: Stack, artifacts_dir: Path
) -> None:
    tile = ana.locator(f'.tile[data-patient-id="{PATIENT_ID}"]')
    expect(tile).to_be_visible()
    heart_rate = tile.locator('[data-vital="hr"] dd')
    expect(heart_rate).to_have_text(re.compile(r"^\d{2,3}$"), timeout=LIVE_TIMEOUT_MS)
    assert 50 <= int(heart_rate.inner_text()) <= 100
    expect(tile.locator(".device-state")).to_have_text("device live")
    expect(ana.locator("#connection")).to_have_attribute("data-state", "connected")
    ana.wait_for_function(
        "() => document.querySelector('.tile .ecg') !== null", timeout=5000
    )
    ana.wait_for_timeout(1500)
    assert ecg_pixels(ana) > 200
    ana.screenshot(path=str(artifacts_dir / "ward-overview.png"))


def test_asystole_alarm_acknowledged_and_audited(
    ana: Page, ward: Stack, artifacts_dir: Path
) -> None:
    alarm = ana.locator('#alarm-list .alarm[data-priority="high"]').filter(
        has_text="asystole"
    )
    expect(alarm).to_be_visible(timeout=ALARM_TIMEOUT_MS)
    tile = ana.locator(f'.tile[data-patient-id="{PATIENT_ID}"]')
    expect(tile).to_have_class(re.compile(r"\balarm-high\b"))
    # IEC 60601-1-8: high priority flashes at 1.4 to 2.8 Hz.
    period_s = float(
        tile.evaluate("e => parseFloat(getComputedStyle(e).animationDuration)")
    )
    assert 1 / 2.8 <= period_s <= 1 / 1.4
    expect(tile.locator(".tile-alarm")).to_have_text("HIGH: asystole")
    ana.wait_for_function("() => document.title.includes('HIGH ALARM: asystole')")
    notified = ana.evaluate("() => window.notificationTitles")
    assert "high priority alarm: asystole" in notified
    priorities = ana.locator("#alarm-list .alarm").evaluate_all(
        "items => items.map(item => item.dataset.priority)"
    )
    assert priorities == sorted(priorities, key=PRIORITY_RANK.__getitem__)
    ana.screenshot(path=str(artifacts_dir / "ward-alarm.png"))

    alarm.get_by_role("button", name=re.compile("^Pause the sound")).click()
    expect(
        alarm.get_by_role("button", name=re.compile("^Pause the sound"))
    ).to_have_text(re.compile("Audio paused until"))
    with ana.expect_response(lambda r: r.url.endswith("/acknowledge")) as answer:
        alarm.get_by_role("button", name=re.compile("^Acknowledge")).click()
    assert answer.value.status == 202
    # Asystole latches: the bedside clears it once acknowledged and the beats are
    # back, and the cleared alarm leaves the list.
    expect(alarm).to_have_count(0, timeout=ALARM_TIMEOUT_MS)
    expect(tile).not_to_have_class(re.compile(r"\balarm-high\b"))

    actions = run_async(audit_actions(ward, ASSIGNED_NURSE))
    assert "alarm.acknowledge" in actions
    assert "alarm.audio_pause" in actions


def test_unassigned_nurse_sees_no_tile(browser: Browser, ward: Stack) -> None:
    page = log_in(browser, ward, UNASSIGNED_NURSE)
    try:
        expect(page.locator("#no-patients")).to_be_visible()
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        assert page.locator(".tile").count() == 0
        assert page.locator("#alarm-list .alarm").count() == 0
    finally:
        page.context.close()


async def add_physician(ward: Stack) -> int:
    connection = await asyncpg.connect(ward.database_url)
    try:
        user_id: int = await connection.fetchval(
            "INSERT INTO users (username, display_name, password_hash, roles)"
            " VALUES ($1, 'Dr Cruz', $2, '{physician}') RETURNING id",
            PHYSICIAN,
            hash_secret(ward.password),
        )
        await connection.execute(
            "INSERT INTO assignments (user_id, patient_id) VALUES ($1, $2)",
            user_id,
            PATIENT_ID,
        )
    finally:
        await connection.close()
    return user_id


async def physician_joins(ward: Stack, identity: ChatIdentity, thread_id: str) -> None:
    async with physician_client(ward, identity) as client:
        await client.publish_keys()
        await client.add_member(thread_id, identity.user_id)


class physician_client:
    """A ChatClient logged in as the physician, usable with ``async with``."""

    def __init__(self, ward: Stack, identity: ChatIdentity) -> None:
        self.ward = ward
        self.identity = identity

    async def __aenter__(self) -> ChatClient:
        token = self.ward.login(PHYSICIAN)
        self.http = httpx.AsyncClient(
            base_url=self.ward.base_url, headers={"Authorization": f"Bearer {token}"}
        )
        return ChatClient(self.http, self.identity)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.aclose()


async def physician_reads(
    ward: Stack, identity: ChatIdentity, thread_id: str
) -> list[str]:
    async with physician_client(ward, identity) as client:
        return [text for _, text in await client.read(thread_id)]


async def physician_sends(
    ward: Stack, identity: ChatIdentity, thread_id: str, text: str
) -> None:
    async with physician_client(ward, identity) as client:
        await client.send(thread_id, text)


async def stored_envelopes(ward: Stack) -> list[str]:
    connection = await asyncpg.connect(ward.database_url)
    try:
        rows = await connection.fetch("SELECT envelope::text AS e FROM chat_messages")
    finally:
        await connection.close()
    return [row["e"] for row in rows]


def test_chat_between_browser_and_python_client(
    ana: Page, ward: Stack, artifacts_dir: Path
) -> None:
    identity = ChatIdentity.generate(run_async(add_physician(ward)))
    ana.locator(f'.tile[data-patient-id="{PATIENT_ID}"]').click()
    expect(ana.locator("#patient-view")).to_be_visible()
    expect(ana.locator("#chat-key")).to_have_text(
        re.compile("fingerprint: [0-9a-f]{32}")
    )
    ana.get_by_label("New thread").fill("Asystole at bed 1")
    ana.get_by_role("button", name="Start").click()
    expect(ana.locator("#thread-view")).to_be_visible()
    thread_id = ana.locator("#thread-list button").first.get_attribute("data-thread-id")
    assert thread_id is not None
    run_async(physician_joins(ward, identity, thread_id))

    from_browser = "Rhythm back after 8 s, please review the strip"
    ana.get_by_label("Message", exact=True).fill(from_browser)
    ana.get_by_role("button", name="Send").click()
    expect(ana.locator("#messages .text").last).to_have_text(from_browser)
    assert run_async(physician_reads(ward, identity, thread_id)) == [from_browser]

    from_python = "Reviewed: lead came off, patient fine"
    run_async(physician_sends(ward, identity, thread_id, from_python))
    expect(ana.locator("#messages .text").last).to_have_text(from_python)
    ana.screenshot(path=str(artifacts_dir / "patient-chat.png"))

    envelopes = run_async(stored_envelopes(ward))
    assert len(envelopes) == 2
    for envelope in envelopes:
        assert "review" not in envelope.lower()
        assert "ciphertext" in envelope


def test_keyboard_opens_patient_page_and_returns(ana: Page) -> None:
    ana.get_by_role("button", name="Back to the ward").click()
    expect(ana.locator("#ward-view")).to_be_visible()
    ana.locator("#logout").focus()
    for _ in range(30):
        ana.keyboard.press("Tab")
        if ana.evaluate("() => document.activeElement.classList.contains('tile')"):
            break
    else:
        pytest.fail("Tab never reached the bed tile")
    ana.keyboard.press("Enter")
    expect(ana.locator("#patient-view")).to_be_visible()
    expect(ana.locator("#back")).to_be_focused()
    ana.keyboard.press("Enter")
    expect(ana.locator("#ward-view")).to_be_visible()


def test_tablet_layout_puts_alarms_first(
    browser: Browser, ward: Stack, artifacts_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 820, "height": 1180})
    page = context.new_page()
    try:
        page.goto(f"{ward.base_url}/ward/")
        page.get_by_label("User name").fill(ASSIGNED_NURSE)
        page.get_by_label("Password").fill(ward.password)
        page.get_by_label("Password").press("Enter")
        tile = page.locator(".tile").first
        expect(tile).to_be_visible()
        alarms_box = page.locator(".side").bounding_box()
        tile_box = tile.bounding_box()
        assert alarms_box is not None and tile_box is not None
        assert alarms_box["y"] < tile_box["y"]
        assert tile_box["x"] + tile_box["width"] <= 820
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0
        page.screenshot(path=str(artifacts_dir / "ward-tablet.png"))
    finally:
        context.close()


BROWSER_TAMPER_CHECK = """async () => {
    const chat = await import('/ward/chat-crypto.js');
    const alice = await chat.ChatIdentity.loadOrCreate('900001');
    const bob = await chat.ChatIdentity.loadOrCreate('900002');
    const key = (who) => ({ user_id: who.userId, key_id: who.keyId,
        ...who.publicKeysJson() });
    const thread = 'T-' + '1'.repeat(32);
    const sealed = await alice.seal(thread, 'hello bob', [key(alice), key(bob)]);
    const outcome = async (envelope, where) => {
        try { return await bob.open(envelope, key(alice), where); }
        catch (error) { return 'rejected: ' + error.problem; }
    };
    const flip = (text) => (text[5] === 'A' ? 'B' : 'A');
    const tampered = { ...sealed,
        ciphertext: sealed.ciphertext.slice(0, 5) + flip(sealed.ciphertext)
            + sealed.ciphertext.slice(6) };
    return {
        tampered: await outcome(tampered, thread),
        other_thread: await outcome(sealed, 'T-' + '2'.repeat(32)),
        genuine: await outcome(sealed, thread),
        replayed: await outcome(sealed, thread),
        extractable: alice.ecdh.privateKey.extractable
            || alice.signing.privateKey.extractable,
    };
}"""


def test_browser_rejects_tampered_and_replayed_chat(ana: Page) -> None:
    result = ana.evaluate(BROWSER_TAMPER_CHECK)
    assert result["tampered"] == "rejected: signature does not verify"
    assert result["other_thread"].startswith("rejected: addressed to thread")
    assert result["genuine"] == "hello bob"
    assert result["replayed"] == "rejected: replayed: message id seen before"
    assert result["extractable"] is False


def test_values_go_stale_and_screen_reconnects(ana: Page, ward: Stack) -> None:
    tile = ana.locator(f'.tile[data-patient-id="{PATIENT_ID}"]')
    heart_rate = tile.locator('[data-vital="hr"]')
    expect(heart_rate).not_to_have_class(
        re.compile(r"\bstale\b"), timeout=LIVE_TIMEOUT_MS
    )

    ward.stop("central")
    expect(ana.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(heart_rate).to_have_class(re.compile(r"\bstale\b"), timeout=LIVE_TIMEOUT_MS)
    expect(tile.locator(".device-state")).to_have_text(
        re.compile(r"^no data for \d+ s$")
    )

    ward.start_central()
    expect(ana.locator("#connection")).to_have_attribute(
        "data-state", "connected", timeout=LIVE_TIMEOUT_MS
    )
    expect(heart_rate).not_to_have_class(
        re.compile(r"\bstale\b"), timeout=LIVE_TIMEOUT_MS
    )
    expect(tile.locator(".device-state")).to_have_text("device live")


ALARM_FLASH_PERIODS = """() => {
    const period = (priority) => {
        const tile = document.createElement('article');
        tile.className = 'tile alarm-' + priority;
        document.body.append(tile);
        const style = getComputedStyle(tile);
        const seconds = style.animationName === 'none'
            ? null : parseFloat(style.animationDuration);
        tile.remove();
        return seconds;
    };
    return { high: period('high'), medium: period('medium'), low: period('low') };
}"""


def test_alarm_flash_rates_follow_iec(ana: Page) -> None:
    periods = ana.evaluate(ALARM_FLASH_PERIODS)
    # IEC 60601-1-8: high 1.4 to 2.8 Hz, medium 0.4 to 0.8 Hz, low steady.
    assert 1.4 <= 1 / periods["high"] <= 2.8
    assert 0.4 <= 1 / periods["medium"] <= 0.8
    assert periods["low"] is None


ECG_GAP_CHECK = """async () => {
    const { EcgStrip } = await import('/ward/ecg.js');
    const canvas = document.createElement('canvas');
    canvas.style.width = '400px';
    canvas.style.height = '100px';
    document.body.append(canvas);
    const strip = new EcgStrip(canvas);
    const chunk = (first) => ({ sample_rate_hz: 250, first_sample_index: first,
        scale_uv: 5, samples: new Array(250).fill(100) });
    strip.add(chunk(0));
    strip.add(chunk(500));  // samples 250 to 499 never arrived
    strip.frame(0);
    strip.playhead = 0;
    for (let ms = 100; ms <= 3000; ms += 100) strip.frame(ms);
    const ratio = canvas.width / 400;
    const drawn = (fromPx, toPx) => {
        const data = canvas.getContext('2d').getImageData(
            fromPx * ratio, 0, (toPx - fromPx) * ratio, canvas.height).data;
        let count = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) count += 1;
        return count;
    };
    const pxPerSample = 25 * (96 / 25.4) / 250;
    const result = {
        before: drawn(10, 240 * pxPerSample),
        gap: drawn(260 * pxPerSample, 490 * pxPerSample),
        after: drawn(510 * pxPerSample, 700 * pxPerSample),
    };
    canvas.remove();
    return result;
}"""


def test_ecg_leaves_missing_samples_blank(ana: Page) -> None:
    pixels = ana.evaluate(ECG_GAP_CHECK)
    assert pixels["before"] > 0
    assert pixels["gap"] == 0
    assert pixels["after"] > 0


def test_page_raised_no_script_errors(ana: Page, script_errors: list[str]) -> None:
    # Last in the file, so it covers everything the shared page did above,
    # including the restart of central.
    assert script_errors == []
