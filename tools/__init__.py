"""Data pipeline, weight conversion and the shared prediction loop."""

import warnings

# Importing paddle warns that the C++-extension builder found no ccache; we build none.
warnings.filterwarnings("ignore", message="No ccache found")
