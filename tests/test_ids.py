"""The one sample-id scheme (mllm_ood.data.ids): shifted copies name their source, and source_of reads it back."""

from mllm_ood.data import digits
from mllm_ood.data.ids import derived_id, source_of
from mllm_ood.data.world import CORRUPTED_DOMAINS


def test_shifted_copies_of_every_eval_digit_name_it():
    _, _, ids = digits.mnist_subset("eval")
    tags = ["textured", "rot15", "colstrong", *CORRUPTED_DOMAINS]  # corrupted tags hold '-' themselves
    for i in map(str, ids):
        assert source_of(i) == i and i.startswith("mnist-")
        assert all(source_of(derived_id(i, t)) == i for t in tags)


def test_other_sources_are_their_own():
    for i in ("printed-3-0001", "mol-0042", "uci-0007", "llavabench-000012"):
        assert source_of(i) == i
