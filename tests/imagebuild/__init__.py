"""manyarch.imagebuild tests."""
