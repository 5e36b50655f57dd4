"""OncoFed ClientApp: what runs inside each hospital (a Flower SuperNode)."""
