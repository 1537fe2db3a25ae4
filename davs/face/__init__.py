"""Faces in real images: detection (OpenCV Haar) and landmark alignment (dlib) onto the training crop,
shared by ingestion (``ingest.face_align: landmarks``) and inference (``davs generate``)."""
