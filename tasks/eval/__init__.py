"""Evaluation: every metric (`metrics`), novel cameras and standard edits (`evaluate`), the scene
report of `nerfsim eval` (`report`) and the sensor products against the twin (`sensors`)."""
