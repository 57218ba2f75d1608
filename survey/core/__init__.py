"""What every stage of a release shares: brick grid, cameras, release layout, I/O, WCS, errors."""
