"""Tests about the development data set itself (FER2013 under AFFECTWATCH_DATASETS):
the importer on the real archive, and the shipped model's card against a fresh
measurement through the edge agent's own ONNX Runtime path."""
import json

import numpy as np
import pytest

from edge_agent.labels import FER2013_CLASSES
from tests.support import dataset_path

FER_ZIP = "fer2013/fer2013.zip"
pytestmark = pytest.mark.dataset(FER_ZIP)


@pytest.fixture(scope="module")
def fer2013():
    from workers.data import load_dataset

    return load_dataset(dataset_path(FER_ZIP))


def test_the_real_archive_imports_with_its_splits_and_classes(fer2013):
    assert len(fer2013) == 35_887 and tuple(fer2013.classes) == FER2013_CLASSES
    sizes = {s: len(fer2013.where_split(s)) for s in ("Training", "PublicTest", "PrivateTest")}
    assert sizes == {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}
    assert fer2013.images.shape[1:] == (48, 48, 1) and fer2013.images.dtype == np.uint8
    # Revision 2: the training images are as sharp as the test images.
    import cv2

    def sharpness(imgs):
        return float(np.mean([np.abs(cv2.Laplacian(im[..., 0], cv2.CV_32F)).mean() for im in imgs[:500]]))

    train, test = fer2013.where_split("Training").images, fer2013.where_split("PrivateTest").images
    assert sharpness(train) > 0.6 * sharpness(test)


def test_the_shipped_model_scores_on_privatetest_what_its_card_says(fer2013):
    from edge_agent.classifier import load_model
    from edge_agent.preprocess import normalize
    from workers.evaluation import evaluate_logits
    from workers.finetune import DEFAULT_MODEL_ONNX

    clf = load_model(DEFAULT_MODEL_ONNX)
    card = json.loads(DEFAULT_MODEL_ONNX.with_suffix(".json").read_text())
    test = fer2013.where_split("PrivateTest")
    logits = clf.backend.run(normalize(test.images, clf.spec))
    res = evaluate_logits(test.labels, logits, clf.labels)
    head = card["headline"]
    assert res["accuracy"] == pytest.approx(head["privatetest_accuracy_7class"], abs=2e-3)
    assert res["valence"]["accuracy"] == pytest.approx(head["privatetest_accuracy_3class"], abs=2e-3)
    assert res["ece"] == pytest.approx(head["privatetest_ece"], abs=5e-3)  # the temperature is in the graph
