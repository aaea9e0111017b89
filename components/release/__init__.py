"""What a published version records of where it came from (lineage)."""
