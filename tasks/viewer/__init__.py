"""The browser viewer of trained scenes (`nerfsim view`, `nerfsim train --view`)."""
