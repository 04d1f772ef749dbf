"""``python -m annostore.schemas``: regenerate the JSON Schema files in schemas/json/."""

from ._jsonschema import write_json_schemas

for path in write_json_schemas():
    print(path)
