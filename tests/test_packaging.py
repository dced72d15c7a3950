"""Nothing declared in pyproject.toml is dead: every package-data glob matches a file."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_data_glob_matches_a_file():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"]["package-data"]
    for package, patterns in package_data.items():
        folder = ROOT / "src" / package.replace(".", "/")
        for pattern in patterns:
            assert any(folder.glob(pattern)), f"{package}: {pattern!r} matches nothing in {folder}"
