class DataError(RuntimeError):
    """Data files that are missing, damaged or not what they claim; the message says what to do."""
