import pytest

from tools.errors import ConfigError, MissingInputError, UserError, entry_point


def test_user_error_is_one_line_and_status_1(capsys):
    @entry_point
    def main(argv=None):
        raise ConfigError(f"bad value in {argv}")

    assert main(["x=1"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: bad value in ['x=1']\n" and captured.out == ""


def test_other_exceptions_propagate_unchanged():
    @entry_point
    def main(argv=None):
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        main()


def test_success_returns_main_s_status():
    assert entry_point(lambda argv=None: 0)() == 0


def test_error_types_keep_the_builtin_types_callers_catch():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, UserError)
    assert issubclass(MissingInputError, FileNotFoundError)
    assert issubclass(MissingInputError, UserError)
