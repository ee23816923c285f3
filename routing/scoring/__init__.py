"""How customers are valued: the pure model, set-based rescoring, satisfaction, tier notices."""
