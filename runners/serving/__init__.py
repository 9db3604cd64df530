"""Online prediction (issue 17): ``predictors`` loads any flavor (plain, no Django); ``server``
is the model-server process for flavors whose loading runs code; ``supervisor`` starts and finds
it; ``service`` resolves, validates, predicts and logs for the API; ``actions`` holds the audited
changes (serving policies, prediction tokens)."""
