"""Hand-crafted synthesis (notebook 02): cut-and-paste, scars, Bézier strokes, DRAEM, MemSeg, GLASS-local, copy-paste."""
