"""The environment: exact pins, conda and pip files agree, and the installed versions are the pinned ones."""

from __future__ import annotations

import re
from importlib import metadata

import yaml

from mllm_ood.paths import ROOT


def _pins_from_requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not an exact pin"
            pins[name.lower()] = version
    return pins


def test_requirements_and_environment_yml_agree():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = {}
    for spec in pip_section:
        if spec.startswith("-e"):
            continue
        name, _, version = spec.partition("==")
        conda_pins[name.lower()] = version
    assert conda_pins == _pins_from_requirements()
    assert "python=3.11" in env["dependencies"]


def test_required_packages_are_pinned():
    pins = _pins_from_requirements()
    for pkg in ["torch", "transformers", "datasets", "pot", "seaborn", "pandas", "scikit-learn", "scipy", "tqdm",
                "pillow", "scikit-image", "mlxtend", "datamol", "rdkit", "nlpaug", "ipykernel", "pytest",
                "jupyterlab", "papermill"]:
        assert pkg in pins, pkg
    assert pins["torch"] == "2.13.0"


def test_installed_versions_match_pins():
    for name, version in _pins_from_requirements().items():
        installed = metadata.version(name)
        assert re.sub(r"\+.*", "", installed) == version, (name, installed, version)
