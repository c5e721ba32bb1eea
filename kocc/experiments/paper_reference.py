"""The paper's reported figures, printed beside the measured ones.

Béthune et al., "Robust One-Class Classification with Signed Distance Function
using 1-Lipschitz Neural Networks", ICML 2023. Reference only: nothing is ever
computed with these numbers; the reports show them next to kocc's measurements.
"""

#: The paper's Table 2 (Béthune et al., ICML 2023): AUROC in %, AD protocol, for
#: OCSDF and Isolation Forest. Reference figures copied from the paper, printed beside
#: the measured ones; ``speech`` is omitted (not available in the shared data).
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "breastw": {"ocsdf": 82.6, "isolation_forest": 98.3},
    "cardio": {"ocsdf": 95.0, "isolation_forest": 93.2},
    "glass": {"ocsdf": 73.9, "isolation_forest": 77.1},
    "http": {"ocsdf": 67.5, "isolation_forest": 99.96},
    "ionosphere": {"ocsdf": 80.2, "isolation_forest": 84.5},
    "lympho": {"ocsdf": 96.1, "isolation_forest": 99.8},
    "mammography": {"ocsdf": 86.0, "isolation_forest": 86.4},
    "musk": {"ocsdf": 92.6, "isolation_forest": 99.99},
    "optdigits": {"ocsdf": 51.0, "isolation_forest": 70.9},
    "pima": {"ocsdf": 60.7, "isolation_forest": 72.9},
    "satimage-2": {"ocsdf": 97.9, "isolation_forest": 99.2},
    "shuttle": {"ocsdf": 99.1, "isolation_forest": 99.6},
    "smtp": {"ocsdf": 87.1, "isolation_forest": 89.7},
    "thyroid": {"ocsdf": 95.9, "isolation_forest": 98.3},
    "vertebral": {"ocsdf": 48.6, "isolation_forest": 36.7},
    "vowels": {"ocsdf": 94.7, "isolation_forest": 73.9},
    "wbc": {"ocsdf": 93.6, "isolation_forest": 99.0},
    "wine": {"ocsdf": 81.5, "isolation_forest": 80.4},
}


#: Table 3 of the paper (MNIST, AUROC %): reference only, never computed with.
PAPER_TABLE3_MNIST = {
    "ocsdf": [99.7, 99.8, 90.6, 93.4, 96.5, 93.9, 98.7, 97.1, 89.4, 96.4],
    "ocsdf_mean": 95.5,
    "certified_mean": {8: 93.2, 16: 89.9, 36: 78.4, 72: 57.5},
    "deep_svdd_mean": 94.8,
    "ocsvm_mean": 91.3,
    "isolation_forest_mean": 92.3,
}
