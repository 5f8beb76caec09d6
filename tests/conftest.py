"""Shared pytest configuration for tests/."""
import pytest


def pytest_collection_modifyitems(items):
    """One pytest-xdist worker grades each exercise (`--dist loadgroup`): its module-scoped
    course directory and autograde runs are set up once, and the exercises spread over workers."""
    for item in items:
        if item.path.name != "test_exercises.py" or not hasattr(item, "callspec"):
            continue
        assignment = item.callspec.params.get("course") or item.callspec.params.get("assignment")
        if isinstance(assignment, str):
            item.add_marker(pytest.mark.xdist_group(f"exercise {assignment}"))
