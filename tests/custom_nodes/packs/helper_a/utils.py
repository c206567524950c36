VALUE = "a"


def describe():
    return "utils of helper_" + VALUE
