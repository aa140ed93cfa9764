"""What the Bluesky test modules share (a module of its own: ``conftest`` is a name every test
folder has)."""
from __future__ import annotations

#: The reason a test module gives when the extra is missing (pytest.importorskip).
NEED_EXTRA = "the [bluesky] extra is not installed: pip install '.[bluesky]'"


def validate(docs) -> None:
    """Every document against event_model's schema."""
    from event_model import DocumentNames, schema_validators

    for name, doc in docs:
        schema_validators[DocumentNames(name)].validate(doc)


def written(spec, column: str) -> list[float]:
    """Column ``column`` of a spectrum as its CSV writes it (rounded to its resolution)."""
    from cplscope.data.cd_spectrum import CD_TABLE, CDSpectrum
    from cplscope.data.spectrum import CPL_TABLE, written_value

    table = CD_TABLE if isinstance(spec, CDSpectrum) else CPL_TABLE
    return [written_value(table, column, getattr(r, column), r) for r in spec]
