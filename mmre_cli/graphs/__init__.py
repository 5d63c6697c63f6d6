"""Scene graphs (textual, visual, caption) and the cross-modal graph (CMG)."""
