"""Front doors: decode client formats into the canonical request, render answers and errors back."""
