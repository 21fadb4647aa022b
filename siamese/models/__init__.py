"""Model builders: the text models (a shared LSTM) and the vision model (a shared CNN backbone).

Which builder a run uses, with which config values, is its family's choice (`siamese.families`).
"""
