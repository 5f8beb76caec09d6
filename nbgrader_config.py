"""nbgrader configuration for the course (nbgrader 0.9.6; option names checked against its source).

Run every `nbgrader` command from the repository root (the folder of this file): solutions/ holds
the instructor versions, exercises/ the generated student versions, and submitted/, autograded/,
feedback/ and gradebook.db appear next to them (all git-ignored).
"""
import os

c = get_config()  # noqa: F821 (injected by traitlets when it loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "transfer-learning-hands-on"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# Each exercise runs in at most 120 s in total (COURSE.md section 10), so no single cell may take
# longer. On a timeout nbgrader interrupts the kernel (SIGINT): the cell fails, the kernel survives,
# the rest of the notebook and the rest of the batch are still graded. nbgrader calls this
# preprocessor `Execute` (a subclass of nbconvert's ExecutePreprocessor).
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120

# nbgrader scores a test cell 0 if it wrote anything to stderr. Drop stderr output that consists
# only of Python warnings (e.g. a harmless PyTorch UserWarning raised inside a student's function),
# so that a warning alone never zeroes a correct answer. Tracebacks are `error` outputs, not stderr,
# so failing tests still fail. The preprocessor is off by default and needs `enabled`.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"\A(?:[^\n]*Warning: [^\n]*\n(?:[ \t][^\n]*\n)*)+\Z"

# `nbgrader zip_collect psN` reads downloaded/psN/archive/ (zip files or notebooks, e.g. exported
# from an LMS) and files `<student_id>__<notebook>.ipynb` as submitted/<student_id>/psN/<notebook>.ipynb.
# The regexp is matched against the file's absolute path; adapt it to your LMS's file names.
c.FileNameCollectorPlugin.named_regexp = r".*/(?P<student_id>[^/]+?)__(?P<file_id>[^/]+)$"
