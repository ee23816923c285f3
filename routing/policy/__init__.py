"""The business's policy file, one module per section, validated strictly."""
