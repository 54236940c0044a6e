"""dropbench plug-ins: weight_noise (a regularizer) and sinc (a data set)."""
