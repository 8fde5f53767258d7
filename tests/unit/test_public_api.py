import modelserve


def test_public_api_is_exactly_this() -> None:
    assert sorted(modelserve.__all__) == ["__version__", "batch", "load"]
    assert modelserve.__version__ != "0.0.0+unknown"  # the package is installed, not just on the path
