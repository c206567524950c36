from ..utils import VALUE

DEEP = "deep-" + VALUE
