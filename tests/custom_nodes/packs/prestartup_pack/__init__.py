from pathlib import Path

RAN_BEFORE_IMPORT = Path(__file__).with_name("prestartup_ran.txt").is_file()
NODE_CLASS_MAPPINGS = {}
