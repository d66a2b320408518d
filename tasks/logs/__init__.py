"""Recorded drive logs in and out: importers of driving datasets into capture logs, exporters back."""
