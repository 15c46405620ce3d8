"""Vital-sign codes: IEEE 11073-10101 terms, LOINC codes and UCUM units.

Devices send the IEEE 11073 reference id and the UCUM unit; central exports the LOINC
code (FHIR vital-signs profile). Each code has exactly one accepted unit, so a value
never reaches storage in a unit nobody expects.
"""

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class VitalSignCode:
    mdc_reference_id: str
    mdc_code: int
    loinc: str
    unit: str
    display: str
    minimum: float
    maximum: float


class VitalSign(Enum):
    """Vital signs the system measures, with the physically plausible range of each."""

    HEART_RATE = VitalSignCode(
        "MDC_ECG_HEART_RATE", 147842, "8867-4", "/min", "Heart rate", 0, 350
    )
    PULSE_RATE = VitalSignCode(
        "MDC_PULS_OXIM_PULS_RATE", 149530, "8889-8", "/min", "Pulse rate", 0, 350
    )
    SPO2 = VitalSignCode(
        "MDC_PULS_OXIM_SAT_O2", 150456, "59408-5", "%", "Oxygen saturation", 0, 100
    )
    RESPIRATION_RATE = VitalSignCode(
        "MDC_RESP_RATE", 151562, "9279-1", "/min", "Respiratory rate", 0, 150
    )
    SYSTOLIC_BP = VitalSignCode(
        "MDC_PRESS_BLD_NONINV_SYS", 150021, "8480-6", "mm[Hg]", "Systolic blood pressure",
        0, 400,
    )
    DIASTOLIC_BP = VitalSignCode(
        "MDC_PRESS_BLD_NONINV_DIA", 150022, "8462-4", "mm[Hg]",
        "Diastolic blood pressure", 0, 300,
    )
    MEAN_BP = VitalSignCode(
        "MDC_PRESS_BLD_NONINV_MEAN", 150023, "8478-0", "mm[Hg]", "Mean blood pressure",
        0, 300,
    )
    TEMPERATURE = VitalSignCode(
        "MDC_TEMP_BODY", 150364, "8310-5", "Cel", "Body temperature", 20, 46
    )


BY_REFERENCE_ID: dict[str, VitalSign] = {
    sign.value.mdc_reference_id: sign for sign in VitalSign
}

# ECG leads a device may name, after IEC 60601-2-27 and the MIT-BIH convention
# ("MLII" is modified lead II).
KNOWN_ECG_LEADS = frozenset(
    {"I", "II", "III", "aVR", "aVL", "aVF", "V", "V1", "V2", "V3", "V4", "V5", "V6",
     "MLII", "MLI", "MLIII", "CM5"}
)
