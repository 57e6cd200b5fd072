"""What every op family shares: argument checks (``checks``), kernel memory layouts (``layout``),
position ids (``positions``), backend registration and kernel entry points (``registration``), and
the Triton row/position helper of the positional-encoding kernels (``triton_positions``)."""
