"""The 18 DCASE 2026 Task 4 sound classes in the official order; index 18 is silence."""

CLASSES: tuple[str, ...] = (
    "AlarmClock", "BicycleBell", "Blender", "Buzzer", "Clapping", "Cough",
    "CupboardOpenClose", "Dishes", "Doorbell", "FootSteps", "HairDryer", "MechanicalFans",
    "MusicalKeyboard", "Percussion", "Pour", "Speech", "Typing", "VacuumCleaner",
)
NUM_CLASSES = len(CLASSES)          # 18 sound classes
SILENCE = NUM_CLASSES               # class index 18 = an empty track / slot
SILENCE_LABEL = "silence"
LABELS: tuple[str, ...] = CLASSES + (SILENCE_LABEL,)   # index -> name, 19 entries
NUM_SLOTS = 3                       # tracks of the tagger = query slots of the separator
SAMPLE_RATE = 32000

_INDEX = {name: i for i, name in enumerate(LABELS)}


def label_index(name: str) -> int:
    """Class name (or 'silence') -> index 0..18; raises ValueError on an unknown name."""
    try:
        return _INDEX[name]
    except KeyError:
        raise ValueError(f"unknown class label {name!r}; expected one of {', '.join(LABELS)}") from None
