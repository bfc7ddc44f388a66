import pytest

from manyarch.units import human_size


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (1234, "1.23kB"),
        (38_500_000, "38.5MB"),
        (2_000_000_000, "2GB"),
        (5 * 10**12, "5TB"),
    ],
)
def test_human_size_like_docker(n: int, text: str) -> None:
    assert human_size(n) == text
