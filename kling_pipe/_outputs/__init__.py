"""What a run leaves for people.

The videos' media checks, the contact sheet, the final cut, and the ownership of the output
folder that `gc` and `cut` respect.
"""
