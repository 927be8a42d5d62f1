"""Stages 5-7, analysis: ensembles, Table 1, cartographies, heterogeneity (HTI, HTA), maps and survival."""
