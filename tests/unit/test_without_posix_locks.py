"""das_assert where Python has no ``fcntl`` (Windows): the plugin stays out of other tests' way,
and the cache goes on without its lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

WITHOUT_FCNTL = "import sys; sys.modules['fcntl'] = None  # what Windows looks like to Python\n"


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "run.py"
    script.write_text(WITHOUT_FCNTL + textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )


def test_a_plain_test_passes_where_das_assert_is_installed_without_fcntl(tmp_path: Path) -> None:
    # The plugin's report hook imported das_assert.cache for every test, das or not: an
    # INTERNALERROR of `import fcntl`, exit 3, in any project of that environment.
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    assert 1\n")
    done = _run(
        """
        import pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "test_plain.py"]))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_cache_lock_is_a_warning_without_fcntl(tmp_path: Path) -> None:
    done = _run(
        """
        import warnings
        from das_assert.cache import AlignmentCache, CacheWarning, training_lock

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with training_lock(AlignmentCache(sys.argv[0] + ".cache"), "key"):
                print("trained")
        print([str(w.message) for w in caught if w.category is CacheWarning])
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "trained" in done.stdout
    assert "this platform has no POSIX file locks" in done.stdout
