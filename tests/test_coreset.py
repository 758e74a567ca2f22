import pytest
import torch

from gmlib.methods.coreset import herding_coreset, herding_coresets, herding_order


def test_herding_order_by_hand():
    # mean 5: first the closest single point (4, index 2), then the one that brings the pair's
    # mean back to 5 (6), then the tie 0 vs 10 (both leave 5/3 away): the first index wins.
    features = torch.tensor([[0.0], [10.0], [4.0], [6.0]])
    assert herding_order(features, 3).tolist() == [2, 3, 0]


def test_herding_running_mean_beats_random_subsets():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(200, 5, generator=gen)
    mean = features.mean(0)
    herd_error = (features[herding_order(features, 10)].mean(0) - mean).norm()
    random_errors = torch.stack([(features[torch.randperm(200, generator=gen)[:10]].mean(0) - mean).norm() for _ in range(50)])
    assert herd_error < random_errors.min()


def test_herding_never_picks_twice():
    features = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    order = herding_order(features, 30)
    assert sorted(order.tolist()) == list(range(30))


def test_herding_rejects_too_many():
    with pytest.raises(ValueError, match="cannot pick 5 images by herding from a class of 4"):
        herding_order(torch.zeros(4, 2), 5)


class TinyDataset:
    """Two classes of 1x2x2 images, enough for herding_coreset's contract."""

    num_classes = 2

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.train_images = torch.randn(20, 1, 2, 2, generator=gen)
        self.train_labels = torch.arange(20) % 2

    def class_indices(self, c):
        return (self.train_labels == c).nonzero().flatten()


def test_herding_coreset_is_class_ordered_and_pure():
    data = TinyDataset()
    images, labels = herding_coreset(data, 3)
    assert images.shape == (6, 1, 2, 2)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    for image, label in zip(images, labels):
        matches = (data.train_images == image).flatten(1).all(1).nonzero().flatten()
        assert data.train_labels[matches[0]] == label


@pytest.mark.parametrize("bad", [0, -1, 2.0])
def test_coreset_rejects_bad_ipc(bad):
    with pytest.raises(ValueError, match="images per class"):
        herding_coreset(TinyDataset(), bad)


def test_herding_pool_is_seeded_and_within_the_class():
    data = TinyDataset()
    a = herding_coreset(data, 2, pool_per_class=4, seed=1)
    b = herding_coreset(data, 2, pool_per_class=4, seed=1)
    assert torch.equal(a[0], b[0]) and a[1].tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="pool_per_class must be None or an integer >= ipc"):
        herding_coreset(data, 3, pool_per_class=2)


def test_herding_coresets_of_several_sizes_equal_separate_runs():
    data = TinyDataset()
    both = herding_coresets(data, [1, 3], pool_per_class=8, seed=2)
    for ipc in (1, 3):
        images, labels = herding_coreset(data, ipc, pool_per_class=8, seed=2)
        assert torch.equal(both[ipc][0], images) and torch.equal(both[ipc][1], labels)


def test_herding_coresets_compute_the_features_once(monkeypatch):
    calls = []

    def counting_features(images):
        calls.append(len(images))
        return images.flatten(1)

    herding_coresets(TinyDataset(), [1, 2, 5], counting_features)
    assert sum(calls) == 20  # each of the 20 images once, not once per size


def test_herding_coresets_need_a_size():
    with pytest.raises(ValueError, match="ipcs must name at least one coreset size"):
        herding_coresets(TinyDataset(), [])
