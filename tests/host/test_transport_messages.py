"""What the transport says when a command got no reply after its retries: the cause the
link saw (a firmware restart, frames lost, or silence) decides what the user is told to do."""
import pytest

from cplscope.board.transport import Transport


@pytest.mark.parametrize("lost, restarts, says, not_says", [
    (0, 1, ["restarted 1 time", "reset cause"], ["USB cable", "lost or corrupted"]),
    (3, 1, ["restarted 1 time", "lost or corrupted 3 frame"], ["USB cable"]),
    (2, 0, ["lost or corrupted 2 frame", "USB cable"], ["restarted"]),
    (0, 0, ["no frame came back", "cplscope info"], ["restarted", "USB cable"]),
])
def test_no_reply_names_what_the_link_saw(lost, restarts, says, not_says):
    text = Transport._no_reply(None, "STATUS", 5.0, 9, lost, restarts)  # type: ignore[arg-type]
    assert text.startswith("STATUS: no reply within 5 s although it was sent 9 times; ")
    assert all(s in text for s in says), text
    assert not any(s in text for s in not_says), text


def test_a_command_sent_once_says_the_board_may_be_busy():
    text = Transport._no_reply(None, "MOVE", 2.0, 1, 4, 1)  # type: ignore[arg-type]
    assert text == "MOVE: no reply within 2 s; the board may be busy or hung (check `cplscope info`)"
