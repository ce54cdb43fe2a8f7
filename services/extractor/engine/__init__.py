"""The extract engine: one detection extract (CSV-in-zip + Parquet) built from all node databases."""

from services.extractor.engine.build import build_extract
from services.extractor.engine.result import BuiltFile, ExtractInputError, ExtractResult

__all__ = ["BuiltFile", "ExtractInputError", "ExtractResult", "build_extract"]
