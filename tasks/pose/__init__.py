"""Pose from images: iNeRF camera and actor pose inversion (`inversion`), BOP pose-estimation data (`bop`)."""
