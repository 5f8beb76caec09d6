"""Every chapter and every exercise is listed in _toc.yml: a notebook left out would still be
tested, but no reader would find it in the book."""
from book_helpers import ROOT, toc_files


def test_every_chapter_and_exercise_is_in_the_toc():
    notebooks = [*ROOT.glob("book/*.ipynb"), *ROOT.glob("exercises/ps*/*.ipynb")]
    pages = {p.relative_to(ROOT).with_suffix("").as_posix() for p in notebooks}
    missing = sorted(pages - set(toc_files()))
    assert not missing, f"list these in _toc.yml (CONTRIBUTING.md says where): {missing}"
