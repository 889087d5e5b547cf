"""The rules config/checks.py declares every config field with: each turns the text of a
``key=value`` override into a value and says what is wrong with a value, as the end of the
sentence "cannot set key=value: must be ..."."""

import ast
import math

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _literal(text):
    """A Python literal, or the text itself when it is not one (the rule then says why it
    does not fit, instead of Python's parser error)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


class Rule:
    """parse(text) -> value; problem(value) -> None or what is wrong ("must be ...")."""

    def parse(self, text):
        return self.convert(_literal(text))

    def convert(self, value):
        """A parsed value made the field's type where that loses nothing (int -> float)."""
        return value

    def describe(self):
        raise NotImplementedError

    def problem(self, value):
        return None if self.allows(value) else f"must be {self.describe()}"

    def allows(self, value):
        raise NotImplementedError


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Int(Rule):
    """An integer in an optional range; ``why`` is said with it (what 0 means, say)."""

    def __init__(self, low=None, high=None, multiple_of=None, why=""):
        self.low, self.high, self.multiple_of = low, high, multiple_of
        self.why = f" ({why})" if why else ""

    def convert(self, value):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def _bounds(self):
        if self.low is not None and self.high is not None:
            return f"in {self.low}..{self.high}"
        if self.low is not None:
            return f">= {self.low}"
        return f"<= {self.high}" if self.high is not None else ""

    def describe(self):
        multiple = f", a multiple of {self.multiple_of}" if self.multiple_of else ""
        return " ".join(filter(None, ["an integer", self._bounds()])) + multiple + self.why

    def problem(self, value):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be {self.describe()}"
        # The type is right: name only what is wrong with the value.
        if (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high):
            return f"must be {self._bounds()}{self.why}"
        if self.multiple_of and value % self.multiple_of:
            return f"must be a multiple of {self.multiple_of}{self.why}"
        return None


class Number(Rule):
    """A finite real number (an integer is accepted and stored as a float); nan is refused
    by every range, so it can never slip through a comparison later."""

    def __init__(self, low=None, high=None, low_open=False, high_open=False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def parse(self, text):
        try:
            return float(text)  # also reads nan and inf, which problem() then refuses
        except ValueError:
            return self.convert(_literal(text))

    def convert(self, value):
        return float(value) if _is_number(value) else value

    def _bounds(self):
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return ""

    def describe(self):
        return " ".join(filter(None, ["a number", self._bounds()]))

    def problem(self, value):
        if not _is_number(value) or not math.isfinite(value):
            return f"must be {self.describe()}"
        low_fails = self.low is not None and (
            value <= self.low if self.low_open else value < self.low)
        high_fails = self.high is not None and (
            value >= self.high if self.high_open else value > self.high)
        return f"must be {self._bounds()}" if low_fails or high_fails else None


class Bool(Rule):
    """true/false, also yes/no, on/off, 1/0, in any case."""

    def parse(self, text):
        word = text.lower()
        return True if word in _TRUE else False if word in _FALSE else text

    def describe(self):
        return "true/false"

    def allows(self, value):
        return isinstance(value, bool)


class Text(Rule):
    """Non-empty text, taken as typed (a path keeps its quotes and backslashes)."""

    def parse(self, text):
        return text

    def describe(self):
        return "non-empty text"

    def allows(self, value):
        return isinstance(value, str) and value != ""


class Choice(Rule):
    """One of a few words."""

    def __init__(self, *choices):
        self.choices = choices

    def parse(self, text):
        value = _literal(text)  # 'd' and d both mean d
        return value if isinstance(value, str) else text

    def describe(self):
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def allows(self, value):
        return isinstance(value, str) and value in self.choices


class Optional(Rule):
    """The inner rule's values, or None (what None means is said in config/base.py)."""

    def __init__(self, rule):
        self.rule = rule

    def parse(self, text):
        return self.rule.parse(text)

    def convert(self, value):
        return self.rule.convert(value)

    def describe(self):
        return f"{self.rule.describe()}, or None"

    def problem(self, value):
        if value is None:
            return None
        return None if self.rule.problem(value) is None else f"must be {self.describe()}"


class Items(Rule):
    """A tuple (a list is taken as one) of values of one rule; one bare value is taken as a
    tuple of one, so ``train_sizes=512`` works."""

    def __init__(self, item, length=None, min_length=0, unique=False, noun=None):
        self.item, self.length, self.min_length, self.unique = item, length, min_length, unique
        self.noun = noun

    def convert(self, value):
        if isinstance(value, (tuple, list)):
            return tuple(self.item.convert(v) for v in value)
        if value is None or isinstance(value, (dict, set, str)):
            return value  # not a value this rule can make a tuple of; problem() says so
        return (self.item.convert(value),)

    def describe(self):
        if self.length is not None:
            count = f"{self.length}"
        elif self.min_length:
            count = f"{self.min_length} or more"
        else:
            count = "any number of"
        text = f"a tuple of {count} {self.noun or self.item.describe()}"
        return text + (", each at most once" if self.unique else "")

    def allows(self, value):
        if not isinstance(value, tuple):
            return False
        if self.length is not None and len(value) != self.length:
            return False
        if len(value) < self.min_length or (self.unique and len(set(value)) != len(value)):
            return False
        return all(self.item.problem(v) is None for v in value)


class Interval(Rule):
    """(low, high) with 0 <= low < high."""

    def convert(self, value):
        return tuple(value) if isinstance(value, list) else value

    def describe(self):
        return "(low, high) pairs with 0 <= low < high"

    def allows(self, value):
        return (isinstance(value, tuple) and len(value) == 2 and all(map(_is_number, value))
                and all(map(math.isfinite, value)) and 0 <= value[0] < value[1])
