import numpy as np
import pytest

from tasks.encode import END, Vocab, render_strings, to_xy


def test_render_strings_and_xy_by_hand():
    vocab = Vocab("abc=" + END)
    r = render_strings(["ab=", "c="], ["ba", "ccc"])
    assert [r.prompt(i) for i in range(2)] == ["ab=", "c="]
    assert [r.target(i) for i in range(2)] == ["ba", "ccc"]
    x, y = to_xy(r, vocab)
    ids = vocab.stoi
    # row 0: a b = b a $   -> x = a b = b a, y = · · b a $
    assert x[0].tolist() == [ids[c] for c in "ab=ba"]
    assert y[0].tolist() == [-1, -1, ids["b"], ids["a"], ids[END]]
    # row 1: c = c c c $   -> y masks the prompt's next char ("=")
    assert x[1].tolist() == [ids[c] for c in "c=ccc"]
    assert y[1].tolist() == [-1, ids["c"], ids["c"], ids["c"], ids[END]]


def test_unknown_characters_are_named():
    with pytest.raises(ValueError, match="'z'"):
        Vocab("ab").ids_of_codepoints(np.array([ord("a"), ord("z")]))
    with pytest.raises(ValueError, match="repeated"):
        Vocab("aa")
