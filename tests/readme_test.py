"""The README's two commands are the ones CI and users run."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _commands():
    readme = open(os.path.join(ROOT, "README.md")).read()
    return [line.strip() for line in readme.splitlines() if line.startswith("python3 -m venv")]


def test_readme_opens_with_the_main_job_and_the_test_command():
    main_job, tests = _commands()[:2]
    for step in ("pip install", "tf-ama train", "tf-ama export"):
        assert step in main_job
    assert re.search(r'pip install -q -e "\.\[test\]" && \.venv/bin/python -m pytest tests', tests)


def test_ci_runs_exactly_the_readme_test_command():
    ci = open(os.path.join(ROOT, ".ci", "run")).read().splitlines()
    assert _commands()[1] in [line.strip() for line in ci]


def test_readme_names_the_fast_tier_of_the_slow_marker_pytest_declares():
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert '.venv/bin/python -m pytest tests -q -n 2 -m "not slow"' in readme
    ini = open(os.path.join(ROOT, "pytest.ini")).read()
    assert re.search(r"^\s+slow:", ini, re.M) and "--dist loadfile" in ini
