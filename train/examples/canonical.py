"""Fit scikit-learn's documented mixed-type pipeline on customers.csv and pickle it.

Run from the repository's root: `python train/examples/canonical.py customers.pkl`.
It is the model users deploy most: a ColumnTransformer that imputes and scales
the numbers and one-hot encodes the text, in front of a LogisticRegression,
fitted on the DataFrame pandas reads (empty cells: NaN; text: strings).
"""

import sys
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

data = pd.read_csv(Path(__file__).with_name("customers.csv"))
X, y = data.drop(columns="churned"), data["churned"]
preprocess = ColumnTransformer(
    [
        (
            "numbers",
            Pipeline(
                [
                    ("impute", SimpleImputer(strategy="median")),
                    ("scale", StandardScaler()),
                ]
            ),
            ["income", "age"],
        ),
        ("text", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
    ]
)
model = Pipeline([("preprocess", preprocess), ("classify", LogisticRegression())])
model.fit(X, y)
target = sys.argv[1] if len(sys.argv) > 1 else "customers.pkl"
joblib.dump(model, target)
print(f"wrote {target}: {type(model).__name__} fitted on {len(X)} rows")
