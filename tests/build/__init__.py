"""manyarch.build tests."""
