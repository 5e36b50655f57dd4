"""Readers shared by the TCGA datasets: GDC and cBioPortal clinical tables, genomic
matrices, patient barcodes."""
