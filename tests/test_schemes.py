"""nerbook.schemes: IOB1 <-> IOB2 <-> BIOES, against tag sequences written out by hand."""

from __future__ import annotations

import pytest

from nerbook.schemes import check_tag, iob2_to_bioes, to_iob1, to_iob2

# (IOB2, IOB1, BIOES) of the same sentences, written by hand
CASES = [
    (["B-PER", "I-PER", "O", "B-LOC"],
     ["I-PER", "I-PER", "O", "I-LOC"],
     ["B-PER", "E-PER", "O", "S-LOC"]),
    (["B-LOC", "B-LOC", "I-LOC", "O"],       # two touching entities of one type: IOB1 needs B-
     ["I-LOC", "B-LOC", "I-LOC", "O"],
     ["S-LOC", "B-LOC", "E-LOC", "O"]),
    (["B-ORG", "B-PER", "O", "B-MISC", "I-MISC", "I-MISC"],  # touching, other types: no B- in IOB1
     ["I-ORG", "I-PER", "O", "I-MISC", "I-MISC", "I-MISC"],
     ["S-ORG", "S-PER", "O", "B-MISC", "I-MISC", "E-MISC"]),
    ([], [], []),
]


@pytest.mark.parametrize("iob2, iob1, bioes", CASES)
def test_conversions(iob2, iob1, bioes):
    assert to_iob1(iob2) == iob1
    assert to_iob2(iob1) == iob2
    assert iob2_to_bioes(iob2) == bioes
    assert to_iob2(bioes) == iob2
    assert to_iob1(iob1) == iob1  # IOB1 in, IOB1 out (read as IOB2 first)


def test_check_tag():
    assert check_tag("O") == ("O", None) and check_tag("S-WORK_OF_ART") == ("S", "WORK_OF_ART")
    for bad in ("B_PER", "X-PER", "B-", "per"):
        with pytest.raises(ValueError, match="unknown tag"):
            check_tag(bad)
