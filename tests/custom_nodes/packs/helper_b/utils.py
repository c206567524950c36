VALUE = "b"


def describe():
    return "utils of helper_" + VALUE
