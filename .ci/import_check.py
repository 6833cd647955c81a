"""Import every module of das_assert, to run under the lowest Python that pyproject.toml admits
and the newest one CI has.

CI's machine has torch for one Python only, so under the others this finds what fails at
import (a name the standard library gained later, or dropped), and says which modules it could
not reach because they import torch or transformers. Exit status: the number of modules that failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback

import das_assert

NOT_INSTALLED_HERE = {"torch", "transformers", "safetensors", "numpy", "tqdm", "accelerate"}


def main() -> int:
    failed, unreached, imported = 0, 0, 0
    for module in pkgutil.walk_packages(das_assert.__path__, "das_assert."):
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] in NOT_INSTALLED_HERE:
                unreached += 1
                continue
            failed += 1
            print(f"FAILED {module.name}", file=sys.stderr)
            traceback.print_exc()
        except Exception:
            failed += 1
            print(f"FAILED {module.name}", file=sys.stderr)
            traceback.print_exc()
        else:
            imported += 1
    version = ".".join(map(str, sys.version_info[:3]))
    print(
        f"python {version}: {imported} modules imported, {failed} failed, "
        f"{unreached} need torch or transformers (not installed for this Python)"
    )
    return failed


if __name__ == "__main__":
    sys.exit(main())
