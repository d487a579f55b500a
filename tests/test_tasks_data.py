"""The shipped task data against the real default tokenizer: every fact's options start with
different first tokens (the option subspace needs it), and the files have the promised shape."""
import pytest

from helpers import tasks

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tokenizer():
    import helpers

    return helpers.load_model()[1]


def test_shipped_facts_have_distinct_first_tokens(tokenizer):
    ds = tasks.load_facts()
    clashes = []
    for item, ids in zip(ds, tasks.option_ids(tokenizer, ds)):
        if len(set(ids)) != len(ids):
            clashes.append((item["id"], item["options"], tokenizer.convert_ids_to_tokens(ids)))
    assert not clashes, f"{len(clashes)} items with a shared first token, e.g. {clashes[:3]}"
    assert len(tasks.distinct_options(tokenizer, ds)) == len(ds)


def test_shipped_facts_shape():
    ds = tasks.load_facts()
    assert len(ds) >= 240 and len(set(ds["topic"])) >= 8
    assert len(set(ds["id"])) == len(ds), "ids must be unique"
    for item in ds:
        assert len(item["options"]) == 4 and 0 <= item["answer"] < 4, item["id"]
        assert item["question"].strip() and item["prompt"].strip() and item["aliases"], item["id"]
        assert len(set(item["options"])) == 4, item["id"]


def test_shipped_retrieval_shape():
    ds = tasks.load_retrieval()
    assert len(ds) >= 100 and set(ds.column_names) >= {"id", "topic", "passage", "query"}
    assert len(set(ds["passage"])) == len(ds) and len(set(ds["query"])) == len(ds)
